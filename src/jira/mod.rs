//! Jira: the client (`client`, over the `model` bodies) and the ticket content (`content`,
//! built on the `adf` document builder for Cloud and wiki markup for Server/DC).

pub mod adf;
pub mod client;
pub mod config;
pub mod content;
pub mod key;
pub mod lookup;
pub mod model;

pub use client::JiraClient;
