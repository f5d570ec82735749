"""mait_deploy.profiling"""
