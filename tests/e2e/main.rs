//! Cross-service tests: the whole platform in one process on free ports, driven by real clients.

mod metering;
mod platform;
mod smoke;
