cd /work/main
i=0
for flags in "" "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution" "--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type=-individual_convolution" "--xla_force_host_platform_device_count=2"; do
  i=$((i+1))
  XLA_FLAGS="$flags" .venv/bin/python -m experiments.benchmark_eval /tmp/ddpm30 --num_examples=16 --batch_size=8 --dtypes=float32 --set=diffusion.sampled_t=0 > /tmp/eig/r$i.log 2>&1
done
