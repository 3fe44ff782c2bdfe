"""Directory put first on ``PYTHONPATH`` by ``agentguard run`` (it holds ``sitecustomize.py``)."""
