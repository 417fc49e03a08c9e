"""forwarder.config: the environment file, daemon options, EAL arguments (pure Python)."""
import pytest

from forwarder import config
from forwarder.config import ConfigError, ForwarderSettings, parse_args, read_env_file

ENV = """\
# /etc/default/virtioforwarder
VIRTIOFWD_CPU_MASK=1,2
export VIRTIOFWD_LOG_LEVEL="7"   # debug
VIRTIOFWD_JUMBO=true
VIRTIOFWD_SOCKET_OWNER=''
VIRTIOFWD_STATIC_VFS=(0000:05:08.1=1 "net_tap0,iface=vf0=2"   # a lab VF
   0000:5:08.2=3)
VIRTIOFWD_CPU_PINS="--virtio-cpu=1:1,2 --virtio-cpu=2:2"
VIRTIOFWD_ZMQ_STATS_EP=tcp://127.0.0.1:5555
VIO4WD_CORE_SCHED_ENABLE=yes
VIO4WD_CORE_SCHED_SENSITIVITY=0.1
"""


def test_env_file_and_settings(tmp_path):
    f = tmp_path / "virtioforwarder"
    f.write_text(ENV)
    env = read_env_file(f)
    assert env["VIRTIOFWD_STATIC_VFS"] == ["0000:05:08.1=1", "net_tap0,iface=vf0=2",
                                           "0000:5:08.2=3"]
    assert env["VIRTIOFWD_SOCKET_OWNER"] == "" and env["VIRTIOFWD_LOG_LEVEL"] == "7"
    s = ForwarderSettings.from_env(env)
    assert s.cpus == [1, 2] and s.log_level == 7 and s.jumbo and not s.tso
    assert s.static_vfs == [("0000:05:08.1", 1), ("net_tap0,iface=vf0", 2), ("0000:05:08.2", 3)]
    assert s.cpu_pins == {1: (1, 2), 2: (2, None)}
    assert s.socket_owner == "" and s.socket_group == "kvm"
    assert s.core_sched.enable and s.core_sched.sensitivity == 0.1
    assert s.zmq_stats_ep == "tcp://127.0.0.1:5555"
    assert s.zmq_config_ep == "ipc:///var/run/virtio-forwarder/config"
    assert s.socket_path(7) == "/tmp/virtio-forwarder/virtio-forwarder7.sock"
    assert s.huge_dir == "/dev/hugepages" and s.pid_dir == "/var/run/virtio-forwarder"


def test_systemd_environmentfile_array_form():
    # systemd's EnvironmentFile= passes a bash array as the literal text "(a b)"
    s = ForwarderSettings.from_env({"VIRTIOFWD_CPU_MASK": "0x6",
                                    "VIRTIOFWD_STATIC_VFS": "(0000:05:08.1=1 0000:05:08.2=2)"})
    assert s.cpus == [1, 2] and [r for _, r in s.static_vfs] == [1, 2]


@pytest.mark.parametrize("var,value,needle", [
    ("VIRTIOFWD_CPU_MASK", "1,x", "VIRTIOFWD_CPU_MASK"),
    ("VIRTIOFWD_LOG_LEVEL", "9", "0..7"),
    ("VIRTIOFWD_JUMBO", "maybe", "true/false"),
    ("VIRTIOFWD_STATIC_VFS", "0000:05:08.1", "<PCI address or devargs>=<relay id>"),
    ("VIRTIOFWD_STATIC_VFS", "eth0=1", "neither a PCI address"),
    ("VIRTIOFWD_STATIC_VFS", "0000:05:08.1=64", "0..63"),
    ("VIRTIOFWD_CPU_PINS", "1-2", "<relay>:<cpu>"),
    ("VIRTIOFWD_CPU_PINS", "1:5", "not a worker CPU"),
    ("VIRTIOFWD_SOCKET_FNAME_PATTERN", "vf%d.sock", "%u"),
    ("VIRTIOFWD_ZMQ_CONFIG_EP", "/var/run/x", "ZeroMQ endpoint"),
    ("VIRTIOFWD_VFIO_VF_TOKEN", "abc", "UUID"),
    ("VIRTIOFWD_HUGETLBFS_MOUNT_POINT", "hugepages", "absolute path"),
    ("VIO4WD_CORE_SCHED_FOO", "1", "unknown core scheduler knob"),
])
def test_bad_values_name_the_variable(var, value, needle):
    env = {"VIRTIOFWD_CPU_MASK": "1,2", var: value}
    with pytest.raises(ConfigError) as e:
        ForwarderSettings.from_env(env)
    assert var in str(e.value) and needle in str(e.value)


def test_missing_cpu_mask():
    with pytest.raises(ConfigError, match="VIRTIOFWD_CPU_MASK is not set"):
        ForwarderSettings.from_env({})


def test_env_file_errors(tmp_path):
    f = tmp_path / "e"
    f.write_text("VIRTIOFWD_STATIC_VFS=(a b\n")
    with pytest.raises(ConfigError, match="closing"):
        read_env_file(f)
    f.write_text("VIRTIOFWD_LOG_LEVEL=6 7\n")
    with pytest.raises(ConfigError, match="unquoted spaces"):
        read_env_file(f)
    f.write_text("echo hi\n")
    with pytest.raises(ConfigError, match=":1: cannot parse"):
        read_env_file(f)
    f.write_text("A=$(reboot)\nexport A\n")
    assert read_env_file(f) == {"A": "$(reboot)"}     # nothing is executed


def test_daemon_options(tmp_path):
    env = tmp_path / "env"
    env.write_text("VIRTIOFWD_CPU_MASK=1\nVIRTIOFWD_STATIC_VFS=0000:05:08.1=1\n")
    s = parse_args(["--env-file", str(env), "-C", "0x6", "-M", "0", "-n", "-l", "3",
                    "-P", "net_pcap0,rx_pcap=/a.pcap=4",
                    "-c", "4:1,2", "-J", "-R", "-T", "-i", "-d", "-a", "-u", "", "-g", "",
                    "-V", "/run/vf", "-S", "vf%u", "-p", "/run/p", "-H", "/mnt/huge",
                    "-Z", "ipc:///x", "-t", "14D63F20-8445-11EA-8900-1F9CE7D5650D",
                    "--", "--no-huge", "-m", "256"], environ={})
    assert s.cpus == [1, 2] and s.master_lcore == 0 and not s.daemonize
    assert not s.log_syslog and s.log_level == 3
    assert s.static_vfs == [("0000:05:08.1", 1), ("net_pcap0,rx_pcap=/a.pcap", 4)]
    assert s.cpu_pins == {4: (1, 2)}
    assert s.jumbo and s.mrgbuf and s.tso and s.vhost_client and s.dynamic_sockets
    assert s.same_numa and s.socket_owner == "" and s.socket_group == ""
    assert s.socket_path(3) == "/run/vf/vf3" and s.pidfile == "/run/p/virtio-forwarder.pid"
    assert s.vfio_vf_token == "14d63f20-8445-11ea-8900-1f9ce7d5650d"
    assert s.extra_eal_args == ["--no-huge", "-m", "256"]
    assert parse_args(["-C", "1", "--nodaemon=log_syslog"], environ={}).log_syslog
    with pytest.raises(ConfigError, match="-C/--cpus"):
        parse_args(["-n"], environ={})
    with pytest.raises(SystemExit):
        parse_args(["-C", "1", "-l", "8"], environ={})


def test_eal_args():
    s = ForwarderSettings(cpus=[1, 3], file_prefix="fwd", huge_dir="/mnt/h")
    numa = {0: 0, 1: 0, 2: 1, 3: 1}
    args = config.eal_args(s, numa)
    assert args[args.index("--lcores") + 1] == "0@0,1@1,3@3"
    assert args[args.index("--main-lcore") + 1] == "0"
    assert args[args.index("--file-prefix") + 1] == "fwd"
    assert args[args.index("--huge-dir") + 1] == "/mnt/h"
    assert args[args.index("--socket-mem") + 1] == "256,256"
    assert args[args.index("-a") + 1] == "0000:00:00.0"     # no PCI probing at start
    s = ForwarderSettings(cpus=[0, 1])                        # main shares a worker's CPU
    assert "--socket-mem" in (a := config.eal_args(s, {0: 0, 1: 0, 2: 1}))
    assert a[a.index("--lcores") + 1] == "2@2,0@0,1@1"
    assert a[a.index("--socket-mem") + 1] == "256,0"          # no workers on node 1
    a = config.eal_args(ForwarderSettings(cpus=[0, 1]), {0: 0, 1: 0})
    assert a[a.index("--lcores") + 1] == "127@0,0@0,1@1"
    s = ForwarderSettings(cpus=[1], extra_eal_args=["--no-huge", "-m", "256", "--no-pci"])
    a = config.eal_args(s, {0: 0, 1: 0})
    assert "--huge-dir" not in a and "--socket-mem" not in a and "-a" not in a
    assert a[-4:] == ["--no-huge", "-m", "256", "--no-pci"]
    with pytest.raises(ConfigError, match="not online"):
        config.eal_args(ForwarderSettings(cpus=[5]), {0: 0, 1: 0})


def test_vf_specs():
    assert config.parse_static_vf("X", "net_tap0,iface=vf0=3", 64) == ("net_tap0,iface=vf0", 3)
    assert config.parse_static_vf("X", "0000:0A:1f.7=0", 64) == ("0000:0a:1f.7", 0)
    assert config.normalise_pci("5:8.1") == "0000:05:08.1"
    assert config.parse_cpus("X", "0x16") == [1, 2, 4]
    assert config.parse_cpus("X", "1,3-5") == [1, 3, 4, 5]
