from grokspec.cli import main

main()
