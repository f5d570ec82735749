"""Builds as independent jobs (job.py) on an executor: this process, local worker processes or a Ray cluster
(executors.py, ray_cluster.py); deploy and compare hand their builds to one."""
