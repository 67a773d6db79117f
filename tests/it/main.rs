//! The integration tests, one binary: every module below is a test suite of its own (`cargo
//! test --test it jira::` runs one), and `common` and `sim` are the helpers and the simulated
//! services they share. Every network call goes to a server on loopback that the test started.

mod common;
mod sim;

mod calls;
mod cli;
mod clock;
mod core;
mod cron;
mod datadog;
mod grouping;
mod hostile_datadog;
mod hostile_servers;
mod input;
mod jira;
mod llm;
mod newcomer;
mod packaging;
mod properties;
mod routes;
mod secrets;
mod writes;
