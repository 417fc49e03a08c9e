#!/bin/busybox sh
# /init of the vio4wd vhost-user test guest (busybox initramfs built by vio4wd_tool/lab/guest.py).
# Kernel cmdline: vio4wd.ip=<addr/len> (optional). Console on ttyS0; command channel on ttyS1:
# the host sends "<id> <base64 script>\n", the guest answers "VIO4WD-BEGIN <id>\n<output>\nVIO4WD-END <id> <rc>\n".
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
echo "vio4wd guest: loading modules"
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m" || echo "insmod $m failed"; done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1"=*) echo "${w#*=}";; esac; done; }
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  addr=$(arg vio4wd.ip)
  [ -n "$addr" ] && ip addr add "$addr" dev eth0
  echo "vio4wd guest: eth0 up ${addr:-without address}"
else
  echo "vio4wd guest: no eth0"
fi
stty -F /dev/ttyS1 raw -echo
exec </dev/ttyS1 >/dev/ttyS1 2>&1
echo "VIO4WD-READY"
while read -r id script; do
  echo "$script" | base64 -d >/tmp/cmd
  sh /tmp/cmd </dev/null >/tmp/out 2>&1
  rc=$?
  echo "VIO4WD-BEGIN $id"
  cat /tmp/out
  printf '\nVIO4WD-END %s %s\n' "$id" "$rc"
done
poweroff -f
