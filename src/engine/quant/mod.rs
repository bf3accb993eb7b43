//! Weight quantisation: NF4 exactly as bitsandbytes, and candle k-quants.
