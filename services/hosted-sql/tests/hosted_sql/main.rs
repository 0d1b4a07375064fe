//! The hosted SQL runtime against real backends on the shared PostgreSQL, directly and through a
//! private PgBouncer in transaction mode.

mod attacks;
mod harness;
mod isolation;
mod publication;
mod runs;
mod tls;
mod writes;
