from fnplane.compute.worker.main import main

main()
