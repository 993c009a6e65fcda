s/queued as [0-9]+\.M[0-9]+P[0-9]+Q[0-9]+\.[^ ]*,S=[0-9]+,W=[0-9]+/queued as NAME/
s/session=[0-9a-f]{12}/session=ID/g
s/mailslot\[[0-9]+\]/mailslot[PID]/g
