"""Training jobs: reward models, DPO and KTO from a snapshot, on the ``gpu`` Celery queue.

See docs/training.md. ``trainer.py`` and ``data.py`` need no Django; the training libraries
(the ``train`` extra) are imported inside the functions that use them.
"""
