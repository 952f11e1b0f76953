#!/usr/bin/env bash
cd /tmp/s31
./job.sh a025_base student.alpha=0.25 & 
MD_VIEWAVG=1 ./job.sh a025_avg1 student.alpha=0.25 &
wait
./job.sh a025_twin student.alpha=0.25 supervision=labels &
MD_VIEWAVG=0.5 ./job.sh a025_avg05 student.alpha=0.25 &
wait
echo QUEUE DONE >> /tmp/s31/chain.log
