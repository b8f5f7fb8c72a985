export JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
C=0,1
lscpu | grep 'Model name'
timeout 100 taskset -c $C python3 experiments/results/throughput/amx/exploration/kg_forms.py
timeout 200 taskset -c $C python3 experiments/results/throughput/amx/exploration/igpt_profile.py float32 bfloat16
cp /tmp/igpt_*.hlo $OUT/ 2>/dev/null
