//! The simulated users: the deterministic [`world`], each user's [`behaviour`] (a pure state
//! machine), and the actix actors that run them over a transport driver.

pub mod action;
pub mod behaviour;
mod config;
pub mod faults;
pub mod user;
pub mod world;
