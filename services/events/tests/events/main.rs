//! Integration tests of the event bus, rate limits and quota state against real Redis servers
//! (private ones, started per test, for anything that stops or kills Redis).

mod bus_redis;
mod bus_single_node;
mod helpers;
mod notify;
mod quota;
mod ratelimit;
