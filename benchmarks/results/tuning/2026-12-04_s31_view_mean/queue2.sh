#!/usr/bin/env bash
cd /tmp/s31
./job.sh a1_base student.alpha=1.0 &
MD_VIEWAVG=0.5 ./job.sh a1_avg05 student.alpha=1.0 &
wait
echo QUEUE2 DONE >> /tmp/s31/chain.log
