#!/bin/bash
cd /tmp/lq
B=/work/main/build/h/app/folio-sparse
P=/work/main/resources/demo/planted-facts.md
for q in 32 64; do for c in 1024 2048; do
  /usr/bin/time -v $B ppl --model q$q/model.gguf --file R-intro.txt --tokens 8192 --chunk $c --attention sparse --threads 1 > chunks/rintro_q${q}_c$c.log 2>&1
  /usr/bin/time -v $B ppl --model q$q/model.gguf --file $P --tokens 8192 --chunk $c --attention sparse --threads 1 > chunks/planted_q${q}_c$c.log 2>&1
done; done
