//! The run's tasks and their one owner.
//!
//! Every task a run spawns (the source, each leader, the Jira client's batched lookups) is
//! spawned through a [`TaskGroup`] of the run's [`Tasks`]. The owner tracks them all (a
//! `tokio_util` `TaskTracker`: its count is the tasks still alive) and holds the token that
//! tells them to stop (a `CancellationToken`); each group has a child of that token, so one
//! concern (the leaders, the lookups, the source) can be told to stop alone, and the whole run
//! is told with the owner's.
//!
//! A task is told to stop, not aborted: its work is raced against its group's token and ends by
//! itself at the await point where it is, its destructors running there (a label lock given
//! back, a cancelled call counted by its circuit breaker). The owner then waits for every task,
//! bounded ([`Tasks::stop`]); only a task still running past that bound (a poll that does not
//! return) is aborted, the last resort, and that is logged.
//!
//! A task that works for one log carries that log's deadline, set where the task is spawned
//! ([`TaskGroup::spawn_with_deadline`]): the task-local every call through `http` reads.
//!
//! In: futures. Out: their `JoinHandle`s (`None` from a task told to stop). Cannot fail.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// How long tasks told to stop get to end by themselves before they are aborted.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// The owner of a run's tasks: every one of them is tracked here and stops on its token.
/// Clones are handles on the same owner; each run has its own (once told to stop, an owner
/// stays stopped).
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    /// Every task spawned through any group of this owner, until it ends.
    tracker: TaskTracker,
    /// Tells every task of the run to stop; each group's token is a child of it.
    token: CancellationToken,
    /// The tasks' abort handles, for the last resort only (finished ones are dropped as new
    /// tasks come).
    aborts: Arc<Mutex<Vec<AbortHandle>>>,
    /// How many tasks the last resort aborted.
    aborted: Arc<AtomicUsize>,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// A group of the run's tasks: tracked here, told to stop with the whole run or alone
    /// ([`TaskGroup::stop`]).
    pub fn group(&self) -> TaskGroup {
        TaskGroup {
            tracker: self.tracker.clone(),
            token: self.token.child_token(),
            aborts: self.aborts.clone(),
            aborted: self.aborted.clone(),
        }
    }

    /// How many of the run's tasks are still alive (told to stop or not).
    pub fn live(&self) -> usize {
        self.tracker.len()
    }

    /// How many tasks had to be aborted because they had not ended within the bound after
    /// they were told to stop (the last resort).
    pub fn aborted(&self) -> usize {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Wait until every task has ended by itself. Unbounded: the caller bounds it (the grace
    /// period after an interrupt), then [`Tasks::stop`]s what is left.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Tell every task to stop and wait, at most `bound`, for them to end. Past it, the tasks
    /// still running are aborted (the last resort) and waited for as long again. How many had
    /// to be aborted.
    pub async fn stop(&self, bound: Duration) -> usize {
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let left: Vec<AbortHandle> = self
            .aborts
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
            .into_iter()
            .filter(|h| !h.is_finished())
            .collect();
        tracing::debug!(
            "{} task(s) still running {} ms after they were told to stop: aborted",
            left.len(),
            bound.as_millis()
        );
        for task in &left {
            task.abort();
        }
        self.aborted.fetch_add(left.len(), Ordering::Relaxed);
        if tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::debug!(
                "{} task(s) still running after they were aborted: left to the runtime",
                self.tracker.len()
            );
        }
        left.len()
    }

    /// Tells every task to stop when dropped: whichever way the code holding it ends (an early
    /// return, a panic), nothing the run started goes on unasked.
    pub fn stop_on_drop(&self) -> DropGuard {
        self.token.clone().drop_guard()
    }
}

/// Spawns tasks of the run's owner under a token of its own (a child of the run's).
#[derive(Debug, Clone)]
pub struct TaskGroup {
    tracker: TaskTracker,
    token: CancellationToken,
    aborts: Arc<Mutex<Vec<AbortHandle>>>,
    aborted: Arc<AtomicUsize>,
}

impl TaskGroup {
    /// Run `work` in a task of the run: it ends with `work`'s output, or with `None` at its
    /// next await point once this group (or the run) is told to stop. A group already told
    /// to stop ends the task at once.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let token = self.token.clone();
        let task = self.tracker.spawn(async move {
            tokio::select! {
                // Told to stop wins over work that is ready in the same poll: after `stop`, no
                // task takes another step.
                biased;
                () = token.cancelled() => None,
                out = work => Some(out),
            }
        });
        if let Ok(mut aborts) = self.aborts.lock() {
            aborts.retain(|h| !h.is_finished());
            aborts.push(task.abort_handle());
        }
        task
    }

    /// [`TaskGroup::spawn`], `work` under a log's `deadline`: every call it makes through a
    /// `http::Service` ends by then. The one way a deadline is put on work.
    pub fn spawn_with_deadline<F>(
        &self,
        deadline: tokio::time::Instant,
        work: F,
    ) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn(crate::http::with_deadline(deadline, work))
    }

    /// Tell this group's tasks to stop: those running end at their next await point, those
    /// spawned later at once.
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// Tell this group's tasks to stop, and wait for `task`, one of them, to end: at most
    /// [`STOP_WAIT`], after which it is aborted (the last resort; `what` names it in the log).
    pub async fn stop_and_join<T>(&self, mut task: JoinHandle<T>, what: &str) {
        self.stop();
        if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
            tracing::debug!(
                "{what} still running {} ms after it was told to stop: aborted",
                STOP_WAIT.as_millis()
            );
            task.abort();
            self.aborted.fetch_add(1, Ordering::Relaxed);
            let _ = tokio::time::timeout(STOP_WAIT, task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Sets its flag when dropped: the work it is part of was dropped where it stood.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A task waiting on something that never comes ends by itself once told to stop: its
    /// handle says it ended (not that it was aborted), its work was dropped at its await point,
    /// and the owner has no task left and aborted none.
    #[tokio::test]
    async fn a_task_told_to_stop_ends_by_itself() {
        let tasks = Tasks::new();
        let group = tasks.group();
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = Dropped(dropped.clone());
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let task = group.spawn(async move {
            let _guard = guard;
            let _ = started_tx.send(());
            std::future::pending::<u32>().await
        });
        started.await.unwrap();
        assert_eq!(tasks.live(), 1);
        let other = tasks.group();
        assert_eq!(tasks.stop(Duration::from_secs(60)).await, 0, "none aborted");
        assert_eq!(tasks.aborted(), 0);
        assert_eq!(task.await.expect("ended, not aborted"), None);
        assert!(dropped.load(Ordering::SeqCst));
        assert_eq!(tasks.live(), 0);
        // A group told to stop (with its run) ends what it is given at once.
        let late = other.spawn(async { 7 });
        assert_eq!(late.await.unwrap(), None);
    }

    /// One group told to stop leaves the others running; the owner waits for those.
    #[tokio::test]
    async fn a_group_stops_alone() {
        let tasks = Tasks::new();
        let (leaders, source) = (tasks.group(), tasks.group());
        let leader = leaders.spawn(std::future::pending::<()>());
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let reader = source.spawn(async move { rx.await.unwrap() });
        leaders.stop();
        assert_eq!(leader.await.unwrap(), None);
        assert_eq!(tasks.live(), 1, "the source's task goes on");
        tx.send(5).unwrap();
        tasks.wait().await;
        assert_eq!(reader.await.unwrap(), Some(5));
        assert_eq!(tasks.live(), 0);
    }

    /// The last resort: a task whose poll does not return cannot hear that it should stop, so
    /// once the bound has passed it is aborted, and the owner does not wait for it for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_that_cannot_stop_is_aborted_after_the_bound() {
        let tasks = Tasks::new();
        let (in_poll_tx, in_poll) = std::sync::mpsc::channel::<()>();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let stuck = tasks.group().spawn(async move {
            // Blocks its worker thread inside one poll until the test lets go.
            let _ = in_poll_tx.send(());
            let _ = held.recv();
            tokio::task::yield_now().await;
        });
        tokio::task::spawn_blocking(move || in_poll.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tasks.stop(Duration::from_millis(50)).await, 1);
        assert_eq!(tasks.aborted(), 1);
        release.send(()).unwrap();
        let ended = stuck.await;
        assert!(ended.is_err_and(|e| e.is_cancelled()), "aborted");
        assert_eq!(tasks.live(), 0);
    }
}
