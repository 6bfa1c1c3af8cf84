"""The broker's side of the pipeline, shared by its senders (API, scheduler) and its consumer (worker).

It carries only small triggers ("route account 23", "drain hook 17"); the events live in the database.
"""
