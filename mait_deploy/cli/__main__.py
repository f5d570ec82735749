from mait_deploy.cli import main

main()
