from tollgate.cli import main

main()
