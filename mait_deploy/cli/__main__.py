from mait_deploy.cli import app

app(prog_name="mait-deploy")
