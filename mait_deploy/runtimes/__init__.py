"""mait_deploy.runtimes"""
