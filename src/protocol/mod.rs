//! Frames and codecs for peer and client traffic.
