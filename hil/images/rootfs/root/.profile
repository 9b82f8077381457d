# root's login shell on the bench's serial console: a fixed prompt the bench
# waits for, no pager, no colours, no line wrapping by the shell.
PS1='root@gateway:~# '
export PAGER=cat SYSTEMD_PAGER= SYSTEMD_COLORS=0
unset HISTFILE
[ -t 0 ] && stty cols 1024 rows 50 2>/dev/null
