"""Prints this folder's rounds per config and allocator: images/s per round, [page faults/kernel s per step], peak RSS.

The round scripts beside it wrote into /tmp/alloc/full; their files were copied here unchanged."""
import json, glob, os
D=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
def load(prefix, rounds, key='configs'):
    out={}
    for r in rounds:
        f=f'{D}/{prefix}_{r}.json'
        if not os.path.exists(f): continue
        d=json.load(open(f))
        for k,v in d[key].items(): out.setdefault(k,{})[r]=v
    return out
R=range(1,8)
default={**load('default_small',R),**load('default_big',R)}
tc={}; je={}
for p in ('tcmalloc_small','tcmalloc_big'):
    for k,v in load(p,R).items(): tc.setdefault(k,{}).update(v)
for p in ('jemalloc_small','jemalloc_big'):
    for k,v in load(p,R).items(): je.setdefault(k,{}).update(v)
pd=load('peers',R,'peers'); pt=load('peers_tcmalloc',R,'peers'); pj=load('peers_jemalloc',R,'peers')
def fmt(d,key='images_per_s'): return ', '.join(f"{d[r][key]:.1f}" for r in sorted(d))
def rng(d,key='images_per_s'):
    v=[d[r][key] for r in d]; return f"{min(v):.1f}-{max(v):.1f}" if v else '-'
def fk(d): return ', '.join(f"{d[r]['minor_page_faults_per_step']:.0f}/{d[r]['system_seconds_per_step']:.3f}" for r in sorted(d))
for k in default:
    print(f"{k}\n  glibc default r{sorted(default[k])}: {fmt(default[k])}  [{fk(default[k])}]\n  tcmalloc r{sorted(tc.get(k,{}))}: {fmt(tc.get(k,{}))} [{fk(tc.get(k,{}))}]\n  jemalloc r{sorted(je.get(k,{}))}: {fmt(je.get(k,{}))} [{fk(je.get(k,{}))}]")
for k in pd:
    print(f"PEER {k} flops {pd[k][min(pd[k])]['matmul_conv_flops_per_step']/1e9:.2f}\n  default r{sorted(pd[k])}: {fmt(pd[k])} [{fk(pd[k])}]\n  tcmalloc r{sorted(pt.get(k,{}))}: {fmt(pt.get(k,{}))}\n  jemalloc r{sorted(pj.get(k,{}))}: {fmt(pj.get(k,{}))} [{fk(pj.get(k,{}))}]")
for name in ('default_small','default_big','tcmalloc_small','tcmalloc_big','jemalloc_small','jemalloc_big'):
    print(name, 'peak RSS MiB', [round(json.load(open(f))['peak_rss_mib']) for f in sorted(glob.glob(f'{D}/{name}_?.json'))])
