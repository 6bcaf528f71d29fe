pub mod placement; pub mod router; pub mod runtime;
