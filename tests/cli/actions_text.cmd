actions
