from limefort.cli import main

main()
