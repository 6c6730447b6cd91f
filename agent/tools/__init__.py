"""Tools the model may call: declarations, argument checks and the local actions they run."""
