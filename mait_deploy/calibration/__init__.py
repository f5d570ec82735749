"""mait_deploy.calibration"""
