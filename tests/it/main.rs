//! End-to-end tests against a real nats-server (one binary, so the workspace links it once).

mod bus;
