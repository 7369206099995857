# Rewrites CUDA launches `kernel<<<grid, block, smem, stream>>>(args)` into `emu::launch(grid, block, smem, [&] { kernel(args); })`
# and CUDA includes into cuda_emu.h, so that a .cu file compiles as host C++ (scripts/cuda-emu/run.sh).
import re,sys
s=open(sys.argv[1]).read()
s=s.replace('#include <cuda_runtime.h>','#include "cuda_emu.h"')
s=s.replace('extern __shared__ float sh[];','float* sh = reinterpret_cast<float*>(emu::dynSmem.data());')
out=[];i=0
while True:
    j=s.find('<<<',i)
    if j<0: out.append(s[i:]); break
    # kernel name: scan back
    k=j; depth=0
    while True:
        c=s[k-1]
        if c=='>': depth+=1
        elif c=='<': depth-=1
        elif depth==0 and not (c.isalnum() or c=='_' or c==':'): break
        k-=1
    name=s[k:j]
    e=s.find('>>>',j)
    cfg=s[j+3:e]
    # args
    a=e+3; assert s[a]=='('
    d=0; m=a
    while True:
        if s[m]=='(': d+=1
        elif s[m]==')':
            d-=1
            if d==0: break
        m+=1
    args=s[a+1:m]
    parts=[]; d=0; cur=''
    for ch in cfg:
        if ch in '(<': d+=1
        if ch in ')>': d-=1
        if ch==',' and d==0: parts.append(cur); cur=''
        else: cur+=ch
    parts.append(cur)
    g=parts[0]; b=parts[1]; sm=parts[2] if len(parts)>2 else '0'
    out.append(s[i:k]+f'emu::launch(dim3({g}), dim3({b}), {sm}, [&]() {{ {name}({args}); }})')
    i=m+1
s=''.join(out)
open(sys.argv[2],'w').write(s)
