#!/bin/sh
# mmdebstrap --customize-hook for the vio4wd lab base image; $1 is the root directory.
# Part of the image recipe: changing this file changes the image's cache key.
set -eu
root="$1"
echo vio4wd-lab >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvio4wd-lab\n' >"$root/etc/hosts"
# the host's lab apt cache, shared by QEMU -virtfs (vm.py) when present
cat >"$root/etc/fstab" <<'EOT'
LABEL=rootfs / ext4 errors=remount-ro 0 1
vio4wd-apt /var/cache/apt/archives 9p trans=virtio,version=9p2000.L,msize=262144,nofail,x-systemd.device-timeout=10s 0 0
EOT
# QEMU user networking: DHCP on the virtio NIC, slirp's DNS
echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/20-lab-user.network" <<'EOT'
[Match]
Driver=virtio_net

[Network]
DHCP=ipv4
EOT
chroot "$root" systemctl enable systemd-networkd.service
# a small initramfs: only the root disk's drivers (udev loads the rest after the switch to the
# root filesystem); under TCG this saves about 10 s per boot
echo MODULES=list >"$root/etc/initramfs-tools/conf.d/vio4wd-lab.conf"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic crc32c_intel >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all
# nothing periodic eating the emulated CPUs
for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
  ln -sf /dev/null "$root/etc/systemd/system/$t"
done
sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=0/' \
       -e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0"/' \
       "$root/etc/default/grub"
printf 'UseDNS no\n' >"$root/etc/ssh/sshd_config.d/vio4wd-lab.conf"
# lab only: password-less root on the serial console for debugging (sshd still wants the key)
chroot "$root" passwd -d root >/dev/null
# first boot (kernel booted directly by QEMU): install GRUB on the disk, then power off
cat >"$root/etc/systemd/system/vio4wd-firstboot.service" <<'EOT'
[Unit]
Description=vio4wd lab first boot: install GRUB
ConditionPathExists=/etc/vio4wd-firstboot
After=local-fs.target

[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/bin/sh -c 'grub-install /dev/vda && update-grub && rm /etc/vio4wd-firstboot && echo VIO4WD-FIRSTBOOT-OK && systemctl poweroff'

[Install]
WantedBy=multi-user.target
EOT
chroot "$root" systemctl enable vio4wd-firstboot.service
touch "$root/etc/vio4wd-firstboot"
