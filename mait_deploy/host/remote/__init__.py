"""Boards over SSH: an inventory, `remote setup` (a venv with the device side) and `remote profile` (push bundles,
verify, evaluate and profile on each board, one fleet report). asyncssh is imported only here (extra ``remote``)."""
