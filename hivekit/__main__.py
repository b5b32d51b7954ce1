from hivekit.cli import main

main()
