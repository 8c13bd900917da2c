from miner.entry import main

main()
