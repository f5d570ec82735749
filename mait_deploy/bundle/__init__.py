"""mait_deploy.bundle"""
