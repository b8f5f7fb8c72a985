export JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
C=0,1
timeout 130 taskset -c $C python3 experiments/results/throughput/amx/exploration/conv_probe.py
timeout 140 taskset -c $C python3 experiments/results/throughput/amx/exploration/igpt_profile.py bfloat16+canon
cp /tmp/igpt_*.hlo $OUT/ 2>/dev/null
