#!/bin/bash
# run-in-vm.sh: run one shell command inside a throw-away qemu guest that boots Debian's kernel
# (which has IPVS) with this machine's root filesystem shared read-only (guest writes go to a
# tmpfs overlay and never reach the host). Used by the kernel tests (tests/kernel/) and the
# end-to-end test; anything else that needs a real IPVS table can use it too.
#
# usage: contrib/vm/run-in-vm.sh 'command'
#   prints the guest's stdout+stderr, exits with the command's status
#   (124 = the VM timed out, 125 = the VM did not boot, the console tail then goes to stderr;
#    126 = something it needs is not installed, named on stderr)
# The command runs with sh in the guest, in the current directory, as root, with
# SUREALIVED_IN_VM=1 set; the ip_vs modules are loaded, the only network device is lo.
# env: IVM_TIMEOUT=300 (seconds) IVM_MEM=256M IVM_SMP=1 IVM_ACCEL=auto|kvm|tcg
#      IVM_KERNEL=/boot/vmlinuz-X IVM_MODULES="extra modules to load" IVM_DEBUG=1
#      IVM_ENV="VAR1 VAR2" (variables exported into the guest) IVM_BASE=/tmp/surealived-vm (cache)
# needs: qemu-system-x86 linux-image-amd64 busybox-static cpio kmod (and ipvsadm for the tests)
set -u; [ $# -ge 1 ] || { echo "usage: $0 'command'" >&2; exit 2; }
need() { echo "ivm: $1 not found (install: $2)" >&2; exit 126; }
for b in qemu-system-x86_64:qemu-system-x86 cpio:cpio modprobe:kmod; do
  command -v "${b%%:*}" >/dev/null || need "${b%%:*}" "${b#*:}"; done
[ -x /bin/busybox ] || need /bin/busybox busybox-static
ls /boot/vmlinuz-* >/dev/null 2>&1 || [ -n "${IVM_KERNEL:-}" ] || need "a kernel in /boot" linux-image-amd64
KERNEL=${IVM_KERNEL:-$(ls -1 /boot/vmlinuz-* | sort -V | tail -n1)}; KVER=${KERNEL##*/vmlinu[xz]-}
BASE=${IVM_BASE:-/tmp/surealived-vm}; mkdir -p "$BASE"; INITRD=$BASE/initramfs-$KVER.cpio.gz
MODULES="ip_vs ip_vs_rr ip_vs_wrr ip_vs_wlc ip_vs_lc ip_vs_sh ip_vs_dh ip_vs_sed ip_vs_nq ip_vs_mh ip_vs_fo ip_vs_ovf ${IVM_MODULES:-}"
if [ ! -s "$INITRD" ]; then ( set -e   # 1. cached initramfs: static busybox + 9p/overlay modules only
  st=$(mktemp -d "$BASE/stage.XXXXXX"); trap 'rm -rf "$st"' EXIT
  mkdir -p "$st"/{bin,mods,proc,sys,dev,host,rw,newroot}; cp /bin/busybox "$st/bin/"; n=10
  for m in $(modprobe -S "$KVER" --show-depends -a virtio_pci 9pnet_virtio 9p overlay | awk '$1=="insmod" && !s[$2]++ {print $2}'); do
    n=$((n+1)); d=$st/mods/$n-$(basename "${m%%.ko*}").ko
    case $m in *.xz) xz -dc "$m" >"$d";; *.zst) zstd -qdc "$m" >"$d";; *) cp "$m" "$d";; esac; done
  cat >"$st/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin; export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
fail() { echo "ivm: $*"; echo 125 >/dev/ttyS2; echo o >/proc/sysrq-trigger; sleep 5; }
for m in /mods/*.ko; do insmod "$m" || echo "ivm: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host || fail "9p mount"
mount -t tmpfs -o mode=755 rw /rw && mkdir -p /rw/u /rw/w
mount -t overlay -o lowerdir=/host,upperdir=/rw/u,workdir=/rw/w ovl /newroot || fail "overlay mount"
for d in proc sys dev; do mount --move /$d /newroot/$d; done
mount -t tmpfs tmpfs /newroot/run; mkdir -p /newroot/dev/pts /newroot/dev/shm /newroot/.ivm
mount -t devpts devpts /newroot/dev/pts; mount -t tmpfs tmpfs /newroot/dev/shm
cp /bin/busybox /newroot/.ivm/busybox    # lands in the tmpfs upper layer, never on the host
# switch_root, not chroot: pid 1 shares its fs root with the kernel's modprobe helper (autoload)
exec switch_root /newroot /.ivm/busybox sh -c '
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
  B=/.ivm/busybox; $B hostname ivm; $B ip link set lo up
  modprobe -a $(echo "$ivm_modules" | $B tr , " ") || echo "ivm: modprobe failed"
  $B stty -F /dev/ttyS1 raw -echo     # no \n->\r\n on the output port
  /bin/sh "$ivm_run/cmd.sh" </dev/null >/dev/ttyS1 2>&1; rc=$?
  $B stty -F /dev/ttyS1 raw -echo     # TCSADRAIN: flush output before power-off
  echo $rc >/dev/ttyS2; $B sync; echo o >/proc/sysrq-trigger; $B sleep 10'
EOF
  chmod +x "$st/init"; (cd "$st" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRD.tmp"; mv "$INITRD.tmp" "$INITRD"
) || { echo "ivm: initramfs build failed" >&2; exit 125; }; fi
BOOTK=$KERNEL; VMLINUX=$BASE/vmlinux-$KVER   # 2. uncompressed vmlinux via PVH entry: ~2.5 s faster under TCG
case $KERNEL in */vmlinuz-*) [ -s "$VMLINUX" ] || python3 - "$KERNEL" "$VMLINUX" <<'EOF' 2>/dev/null
import lzma, re, subprocess, sys, os
d = open(sys.argv[1], 'rb').read(); i = d.find(b'\xfd7zXZ\x00'); j = d.find(b'\x28\xb5\x2f\xfd'); o = b''
if i >= 0: o = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[i:])
elif j >= 0: o = subprocess.run(['zstd', '-qdc'], input=d[j:], capture_output=True).stdout
if o[:4] == b'\x7fELF' and re.search(rb'\x04\0\0\0.\0\0\0\x12\0\0\0Xen\0', o, re.S):  # PVH ELF note
    open(sys.argv[2] + '.tmp', 'wb').write(o); os.rename(sys.argv[2] + '.tmp', sys.argv[2])
EOF
  [ -s "$VMLINUX" ] && BOOTK=$VMLINUX;; esac
ACCEL=${IVM_ACCEL:-auto}   # 3. KVM only if a probe boot really works (cached), else TCG
if [ "$ACCEL" = auto ]; then
  if [ -s "$BASE/accel" ]; then ACCEL=$(cat "$BASE/accel"); else ACCEL=tcg
    [ -w /dev/kvm ] && IVM_ACCEL=kvm IVM_TIMEOUT=20 "$0" true >/dev/null 2>&1 && ACCEL=kvm; echo $ACCEL >"$BASE/accel"; fi; fi
if [ "$ACCEL" = kvm ]; then AOPTS=(-accel kvm -cpu host); else AOPTS=(-accel tcg,thread=multi,tb-size=64 -cpu max); fi
RUN=$(mktemp -d "$BASE/run.XXXXXX"); QPID=   # 4. run
trap '[ -n "$QPID" ] && kill $QPID 2>/dev/null; rm -rf "$RUN"' EXIT; trap 'exit 143' TERM; trap 'exit 130' INT
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{ for v in ${IVM_ENV:-}; do [ -n "${!v+x}" ] && echo "export $v=$(sq "${!v}")"; done
  echo "export SUREALIVED_IN_VM=1"; echo "cd $(sq "$PWD") 2>/dev/null || cd /"; printf '%s\n' "$1"; } >"$RUN/cmd.sh"
timeout -k 5 "${IVM_TIMEOUT:-300}" qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
  -machine q35 "${AOPTS[@]}" -smp "${IVM_SMP:-1}" -m "${IVM_MEM:-256M}" -nic none \
  -kernel "$BOOTK" -initrd "$INITRD" -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init nokaslr \
mitigations=off ivm_run=$RUN ivm_modules=$(echo $MODULES | tr ' ' ,)" \
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -serial file:"$RUN/console.log" -serial file:"$RUN/out" -serial file:"$RUN/rc" </dev/null >"$RUN/qemu.log" 2>&1 &
QPID=$!; wait $QPID; qrc=$?; QPID=
cat "$RUN/out" 2>/dev/null; rc=$(tr -dc 0-9 <"$RUN/rc" 2>/dev/null)
[ -z "$rc" ] || [ "${IVM_DEBUG:-0}" = 1 ] && { echo "ivm: qemu rc=$qrc accel=$ACCEL kernel=$BOOTK; console tail:"
  tail -n 40 "$RUN/console.log"; cat "$RUN/qemu.log"; } >&2
[ -n "$rc" ] && exit "$rc"; { [ $qrc = 124 ] || [ $qrc = 137 ]; } && exit 124; exit 125
