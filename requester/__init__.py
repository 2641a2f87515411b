"""The requester: consumes submissions, translates them, stores jobs and answers queries."""
