from signup.entrypoints.cli import main

main()
