//! # autolora-data
