use super::*;
use std::sync::Arc;

/// 64 leaders race for 7 places, in reverse order of their turns, with random small
/// delays; every fifth create fails and gives its place back. The places go to exactly the
/// turns a sequential run gives them to: the first seven whose create succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cap_holds_exactly_and_in_turn_order_under_64_racing_tasks() {
    for round in 0..20u64 {
        let cap = Arc::new(TicketCap::new(7));
        for turn in 0..64 {
            cap.register(turn);
        }
        let tasks: Vec<_> = (0..64u64)
            .rev()
            .map(|turn| {
                let cap = cap.clone();
                tokio::spawn(async move {
                    let delay = (turn * 7919 + round * 104_729) % 5;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    if !cap.acquire(turn).await {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    if turn % 5 == 0 {
                        cap.release(turn);
                        None
                    } else {
                        cap.commit(turn);
                        Some(turn)
                    }
                })
            })
            .collect();
        let mut won = Vec::new();
        for t in tasks {
            won.extend(t.await.unwrap());
        }
        won.sort_unstable();
        assert_eq!(won, vec![1, 2, 3, 4, 6, 7, 8], "round {round}");
    }
}

/// A known problem (no place needed) and a leader that ends without deciding do not hold
/// later turns back.
#[tokio::test]
async fn turns_that_need_no_place_let_later_turns_through() {
    let cap = TicketCap::new(1);
    for turn in 0..3 {
        cap.register(turn);
    }
    cap.not_needed(0);
    cap.abandon(1);
    assert!(!cap.acquire(1).await, "an abandoned turn takes no place");
    assert!(cap.acquire(2).await);
    cap.commit(2);
    cap.register(3);
    assert!(!cap.acquire(3).await);
}
