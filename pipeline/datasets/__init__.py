"""The synth builder and noise injection: what `pairsift demo` needs to make its input."""
