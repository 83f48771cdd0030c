"""The job flow: submit, poll, finalize and the reconciler, with the parts they share."""
