//! Unit tests of the ARC set builder.
