//! End-to-end tests against a real nats-server and the real binaries (one test binary, so the
//! workspace links it once).

mod automation;
mod boundaries;
mod bus;
mod chaos;
mod console;
mod coordinator;
mod deploy;
mod emulator;
mod fidelity;
mod health;
mod hierarchy;
mod logwatch;
mod observability;
mod procedure;
mod scheduler;
mod secure;
mod sms_provider;
mod support;
mod traces;
