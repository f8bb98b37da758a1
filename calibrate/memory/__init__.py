"""Memory and prefill/decode time measurements of decoder layers: probes, layer builders,
snapshot summaries, the activation-peak and efficiency fits, and their report."""
