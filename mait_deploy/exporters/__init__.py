"""mait_deploy.exporters"""
