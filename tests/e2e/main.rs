//! Cross-service tests: the whole platform in one process on free ports, driven by real clients.

mod dataplane;
mod platform;
mod smoke;
