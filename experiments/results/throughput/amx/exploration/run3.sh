export JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
C=0,1
timeout 330 taskset -c $C python3 experiments/results/throughput/amx/exploration/igpt_net.py float32 bfloat16+canon float32+canon
timeout 90 taskset -c $C python3 experiments/peer_speed.py --peers=igpt --mingpt_repo=../minGPT --steps=4 --repeats=1 --out=$OUT/peer_igpt.json 2>&1 | tail -4
