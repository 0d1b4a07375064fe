//! Cross-service tests: the whole platform in one process on free ports, driven by real clients.

mod account_events;
mod dataplane;
mod metering;
mod oauth_sdk;
mod platform;
mod smoke;
