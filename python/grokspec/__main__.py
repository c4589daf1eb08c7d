from grokspec._entry import main

main()
